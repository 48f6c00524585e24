-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums
WHERE educ IN (SELECT educ FROM pums GROUP BY educ HAVING COUNT(*) > 100)
GROUP BY race
