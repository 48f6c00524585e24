-- ok
SELECT CAST(age AS VARCHAR) AS age_text, COALESCE(NULLIF(educ, 0), -1) AS e, LEAST(GREATEST(sex, 0), 1) AS s, ABS(CEIL(age / 5)) AS a, COUNT(*) AS n
FROM pums
GROUP BY CAST(age AS VARCHAR), COALESCE(NULLIF(educ, 0), -1), LEAST(GREATEST(sex, 0), 1), ABS(CEIL(age / 5))
