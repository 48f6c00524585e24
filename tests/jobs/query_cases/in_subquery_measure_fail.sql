-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums
WHERE educ IN (SELECT income FROM pums GROUP BY income)
GROUP BY race
