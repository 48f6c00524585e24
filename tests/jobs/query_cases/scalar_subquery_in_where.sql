-- ok
SELECT race, COUNT(*) AS n FROM pums WHERE age > 40 GROUP BY race
