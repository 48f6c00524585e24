-- fail: subquery
SELECT s.a, COUNT(*) AS n FROM (SELECT DISTINCT age AS a FROM pums) AS s GROUP BY s.a
