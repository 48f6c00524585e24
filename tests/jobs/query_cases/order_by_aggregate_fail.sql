-- fail: order_by
SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY n DESC, race
