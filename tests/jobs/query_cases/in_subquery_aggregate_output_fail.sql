-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums
WHERE educ IN (SELECT COUNT(*) FROM pums GROUP BY educ)
GROUP BY race
