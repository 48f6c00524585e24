-- ok
SELECT CAST(age AS VARCHAR) AS age_text, ABS(CEIL(age / 5)) AS a, COUNT(*) AS n
FROM pums
GROUP BY CAST(age AS VARCHAR), ABS(CEIL(age / 5))
