-- ok
SELECT race, COUNT(*) AS n FROM pums WHERE sex = 1 GROUP BY race
