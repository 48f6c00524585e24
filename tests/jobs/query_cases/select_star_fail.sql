-- fail: select_star
SELECT * FROM pums
