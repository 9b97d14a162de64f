# rcd_add_unit_test(NAME src... [LIBS ...])
# One cmocka binary per module, registered with a label and a timeout.
function(rcd_add_test name)
    cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
    if (NOT T_LABEL)
        set(T_LABEL unit)
    endif ()
    if (NOT T_TIMEOUT)
        set(T_TIMEOUT 60)
    endif ()
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS ${T_LABEL}
                         TIMEOUT ${T_TIMEOUT}
                         ENVIRONMENT "RECADO_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endfunction()

function(rcd_add_unit_test name)
    rcd_add_test(${name} LABEL unit ${ARGN})
endfunction()
