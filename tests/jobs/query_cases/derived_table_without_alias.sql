-- ok
SELECT a, COUNT(*) AS n FROM (SELECT age AS a FROM pums) GROUP BY a
