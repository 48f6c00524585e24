-- fail: limit
SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY race LIMIT 2
