-- ok
SELECT race, COUNT(*) AS n FROM pums WHERE race IN (1, 2, -1) GROUP BY race
