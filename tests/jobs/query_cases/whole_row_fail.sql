-- fail: select_star
SELECT COUNT(DISTINCT pums) AS n FROM pums
