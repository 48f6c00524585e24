-- fail: select_star
FROM pums
