# Generates a C file whose function FUNC returns the text of IN (the
# dashboard page), so the page is edited as HTML and shipped inside the
# binary with no files to install. Run as:
#   cmake -DIN=... -DOUT=... -DFUNC=... -DHEADER=... -P EmbedText.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
set(body "/* generated from ${IN} by EmbedText.cmake: do not edit */\n")
string(APPEND body "#include \"${HEADER}\"\n\n")
string(APPEND body "static const char s_text[] = {${hex}0x00};\n\n")
string(APPEND body "const char *\n${FUNC} (void)\n{\n    return s_text;\n}\n")
file(WRITE "${OUT}.tmp" "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp"
                "${OUT}")
