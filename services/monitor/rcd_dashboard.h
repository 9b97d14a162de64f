/*  rcd_dashboard.h - the monitor's dashboard page for people.

    One self-contained HTML page (no external assets) that fetches
    /queue-stats, /health and /alerts every 2 s and shows them. The page
    is edited as services/monitor/dashboard.html and embedded at build
    time (EmbedText.cmake).
*/
#ifndef RCD_DASHBOARD_H_INCLUDED
#define RCD_DASHBOARD_H_INCLUDED

/*  The page, NUL-terminated. Borrowed; static. */
const char *
rcd_dashboard_html (void);

#endif
