-- fail: select_star
SELECT COUNT(DISTINCT *) AS n FROM pums
