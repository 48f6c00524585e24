-- fail: subquery
SELECT s.a, COUNT(*) AS n FROM (SELECT age + 1 AS a FROM pums WHERE sex = 1) AS s GROUP BY s.a
