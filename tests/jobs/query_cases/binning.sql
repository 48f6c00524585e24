-- ok
SELECT FLOOR(age / 10) * 10 AS decade, COUNT(*) AS n FROM pums GROUP BY FLOOR(age / 10) * 10
