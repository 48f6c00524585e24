-- ok
SELECT race, COUNT(*) AS n FROM pums WHERE race = 1 GROUP BY race
