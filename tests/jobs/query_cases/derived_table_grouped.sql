-- ok
SELECT s.race, COUNT(*) AS n FROM (SELECT race FROM pums) AS s GROUP BY s.race
