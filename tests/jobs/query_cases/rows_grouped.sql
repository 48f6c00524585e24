-- ok
SELECT age, sex, COUNT(*) AS n FROM pums GROUP BY age, sex
