-- ok
SELECT race, sex, SUM(income) AS income FROM pums GROUP BY race, sex
