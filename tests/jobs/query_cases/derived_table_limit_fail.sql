-- fail: subquery
SELECT s.a, COUNT(*) AS n FROM (SELECT age AS a FROM pums LIMIT 10) AS s GROUP BY s.a
