-- ok
SELECT p.race, COUNT(*) AS n FROM pums AS p JOIN tax AS t ON t.pid = p.pid WHERE t.industry = 'retail' GROUP BY p.race
