-- ok
SELECT race, COUNT(*) AS n FROM pums WHERE race <> 5 GROUP BY race
