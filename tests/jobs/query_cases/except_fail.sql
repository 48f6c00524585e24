-- fail: single_select
SELECT race FROM pums GROUP BY race EXCEPT SELECT educ FROM pums GROUP BY educ
