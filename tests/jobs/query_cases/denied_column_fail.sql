-- fail: column_denied, column: tax.firm_id
SELECT industry, COUNT(*) AS n FROM tax WHERE firm_id = 7 GROUP BY industry
