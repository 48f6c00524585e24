-- fail: group_key, column: pums.educ
SELECT COALESCE(NULLIF(educ, 0), -1) AS e, COUNT(*) AS n FROM pums GROUP BY COALESCE(NULLIF(educ, 0), -1)
