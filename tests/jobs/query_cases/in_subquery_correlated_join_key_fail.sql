-- fail: subquery
SELECT p.race, COUNT(*) AS n FROM pums AS p
WHERE p.educ IN (SELECT q.educ FROM pums AS q WHERE q.pid = p.pid GROUP BY q.educ)
GROUP BY p.race
