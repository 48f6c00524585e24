-- fail: group_key, column: pums.race
SELECT COUNT(*) AS n FROM pums GROUP BY race
