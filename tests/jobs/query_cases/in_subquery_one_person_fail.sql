-- fail: subquery
SELECT sex, COUNT(*) AS n FROM pums
WHERE sex IN (SELECT sex FROM pums WHERE race = 5 GROUP BY sex HAVING SUM(income) > 50000)
GROUP BY sex
