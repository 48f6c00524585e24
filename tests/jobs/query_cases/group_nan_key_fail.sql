-- fail: group_key
SELECT CAST('nan' AS DOUBLE) AS k, COUNT(*) AS n FROM pums GROUP BY CAST('nan' AS DOUBLE)
