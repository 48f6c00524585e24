-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums
WHERE educ IN (SELECT educ FROM pums GROUP BY educ ORDER BY SUM(income) DESC LIMIT 1)
GROUP BY race
