-- fail: function_not_allowed
SELECT md5(CAST(age AS VARCHAR)) AS h, COUNT(*) AS n FROM pums GROUP BY md5(CAST(age AS VARCHAR))
