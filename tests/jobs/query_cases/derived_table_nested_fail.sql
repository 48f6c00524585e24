-- fail: subquery
SELECT s.a, COUNT(*) AS n FROM (SELECT r.a FROM (SELECT age AS a FROM pums) AS r) AS s GROUP BY s.a
