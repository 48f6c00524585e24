-- fail: select_star
SELECT * EXCLUDE (pid) FROM pums
