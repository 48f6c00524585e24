-- ok
SELECT race, age, COUNT(*) AS n FROM pums GROUP BY race, age
