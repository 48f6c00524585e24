-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums
WHERE educ IN (SELECT educ FROM pums WHERE sex = 1)
GROUP BY race
