"""Reports for people: the KPI report (HTML, PDF), the workbooks, the 766 scoreboard, from the published marts."""
