-- ok
SELECT race, COUNT(*) AS n FROM pums WHERE educ IN (9, 10, 11) GROUP BY race
