-- ok
SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY 1 DESC
