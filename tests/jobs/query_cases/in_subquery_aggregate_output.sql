-- ok
SELECT race, COUNT(*) AS n FROM pums
WHERE educ IN (SELECT educ FROM pums GROUP BY educ)
GROUP BY race
