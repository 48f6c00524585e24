-- ok
SELECT race, sex, COUNT(*) AS n FROM pums GROUP BY race, sex ORDER BY race DESC, sex
