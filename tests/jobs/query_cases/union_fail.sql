-- fail: single_select
SELECT race, COUNT(*) AS n FROM pums GROUP BY race UNION SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ
