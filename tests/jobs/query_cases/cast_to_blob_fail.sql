-- fail: function_not_allowed
SELECT CAST(age AS BLOB) AS a, COUNT(*) AS n FROM pums GROUP BY CAST(age AS BLOB)
