-- ok
SELECT t.bracket, p.sex, COUNT(*) AS n FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.bracket, p.sex
