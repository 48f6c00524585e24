-- ok
SELECT sex, COUNT(*) AS n, SUM(income) AS total, MIN(income) AS low, MAX(income) AS high, MEDIAN(income) AS mid
FROM pums
GROUP BY sex
