-- fail: order_by
SELECT race, SUM(income) AS s FROM pums GROUP BY race ORDER BY s
