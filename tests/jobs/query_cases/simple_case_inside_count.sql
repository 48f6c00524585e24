-- ok
SELECT race, COUNT(*) AS doctors FROM pums WHERE educ = 16 GROUP BY race
