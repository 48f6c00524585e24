-- ok
SELECT a.race, COUNT(*) AS n FROM pums AS a JOIN pums AS b ON a.pid = b.pid GROUP BY a.race
