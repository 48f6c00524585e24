-- ok
SELECT race, COUNT(*) AS units FROM pums GROUP BY race
