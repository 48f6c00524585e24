-- ok
SELECT a.race, COUNT(*) AS n FROM (SELECT race FROM pums WHERE age >= 18) AS a GROUP BY a.race
