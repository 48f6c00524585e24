-- ok
SELECT s.a, COUNT(*) AS n FROM (SELECT age AS a FROM pums WHERE sex = 1) AS s GROUP BY s.a
