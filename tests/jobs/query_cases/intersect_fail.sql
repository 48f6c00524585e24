-- fail: single_select
SELECT race FROM pums GROUP BY race INTERSECT SELECT educ FROM pums GROUP BY educ
